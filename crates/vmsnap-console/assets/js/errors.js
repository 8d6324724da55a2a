// API errors in words a user understands: what went wrong, with the name involved, and what to do.

const KINDS = {
  virtualmachines: 'VirtualMachine',
  virtualmachineinstances: 'VirtualMachine instance',
  virtualmachinesnapshots: 'snapshot',
  virtualmachinesnapshotcontents: 'snapshot content',
  virtualmachinerestores: 'restore',
  virtualmachinebackuprepositories: 'repository',
  virtualmachinerepositorybackups: 'backup',
  virtualmachinerepositoryrestores: 'restore',
};

const sentence = (text) => {
  const t = String(text || '').trim();
  if (!t) return '';
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
};

const NAME_RULES =
  'Use at most 253 lowercase letters, digits, "-" or ".", starting and ending with a letter or digit.';

/// A user-facing message for `err`. `what` names the object concerned (`{kind, name}` where `kind`
/// is a word such as "snapshot"), `doing` the action in words ("take the snapshot").
export function describeError(err, { kind, name, doing } = {}) {
  if (!err) return '';
  if (err.name !== 'ApiError') return sentence(err.message || String(err));
  const noun = kind || KINDS[err.details?.kind] || 'object';
  const objName = name || err.details?.name;
  const prefix = doing ? `Could not ${doing}: ` : '';
  switch (err.code) {
    case 0:
      return `${prefix}the vmsnap server cannot be reached. Check that "vmsnap serve" is still running, then try again.`;
    case 401:
      return 'The token was not accepted. Log in again with the token from the kubeconfig (the "token:" line) or the token file.';
    case 403:
      return `${prefix}you are not allowed to do this. ${sentence(err.message)}`;
    case 404:
      if (objName) return `${prefix}the ${noun} ${objName} no longer exists.`;
      return `${prefix}${sentence(err.message)}`;
    case 409:
      if (err.reason === 'AlreadyExists') {
        return `A ${noun} named ${objName} already exists. Choose another name.`;
      }
      if (/has been modified/.test(err.message)) {
        return `${prefix}the ${noun} ${objName || ''} was changed by someone else at the same time. Try again.`.replace('  ', ' ');
      }
      return `${prefix}${sentence(err.message)}`;
    case 422: {
      const causes = err.details?.causes || [];
      const nameCause = causes.find((c) => c.field === 'metadata.name');
      if (nameCause) return `The name ${objName ? `"${objName}" ` : ''}is not valid. ${NAME_RULES}`;
      const text = causes.length ? causes.map((c) => sentence(c.message)).join(' ') : sentence(err.message);
      return `${prefix || 'The request was refused: '}${text}`;
    }
    case 503:
      return `${prefix}the service that does this is not available right now. ${sentence(err.message)}`;
    default:
      if (err.code >= 500) return `${prefix}the server failed. ${sentence(err.message)}`;
      return `${prefix}${sentence(err.message)}`;
  }
}

/// Whether `name` is a valid object name (a DNS-1123 subdomain); returns the problem or ''.
export function nameProblem(name) {
  if (!name) return 'Enter a name.';
  if (name.length > 253) return `The name is too long. ${NAME_RULES}`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name)) {
    return `The name is not valid. ${NAME_RULES}`;
  }
  return '';
}

/// Like nameProblem, but for names that must be DNS labels (VirtualMachines: at most 63 characters, no dots).
export function vmNameProblem(name) {
  if (!name) return 'Enter a name.';
  if (name.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) {
    return 'The name is not valid. Use at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit.';
  }
  return '';
}
