// The Kubernetes API of the server that served this page: the bearer token, requests, and the
// paths of the kinds the console uses. Errors are thrown as ApiError carrying the API's Status.

const TOKEN_KEY = 'vmsnap.token';

/// The token lives in sessionStorage only: it is gone when the browser tab is closed.
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

let unauthorizedHandler = () => {};

/// Called whenever the API answers 401 (the token was revoked or the server got a new one).
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/// An error answered by the API (a Kubernetes Status), or a failure to reach it (code 0).
export class ApiError extends Error {
  constructor(code, status) {
    super(status?.message || `HTTP ${code}`);
    this.name = 'ApiError';
    this.code = code;
    this.reason = status?.reason || '';
    this.details = status?.details || {};
  }
}

/// Headers of every API call.
export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.token}`, Accept: 'application/json', ...extra };
}

/// Turns a non-2xx response into an ApiError (and reports a 401).
export async function errorFrom(response) {
  let status = null;
  try {
    status = await response.json();
  } catch {
    status = null;
  }
  if (response.status === 401) unauthorizedHandler();
  return new ApiError(response.status, status && status.kind === 'Status' ? status : null);
}

/// Calls the API; resolves to the decoded JSON body.
export async function request(method, path, body, { signal, token, contentType = 'application/json' } = {}) {
  const headers = authHeaders(body === undefined ? {} : { 'Content-Type': contentType });
  if (token !== undefined) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { message: String(err.message || err), reason: 'NetworkError' });
  }
  if (!response.ok) throw await errorFrom(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const create = (path, obj) => request('POST', path, obj);
export const remove = (path) => request('DELETE', path, { propagationPolicy: 'Background' });
/// A JSON merge patch (RFC 7386): only the fields given change.
export const mergePatch = (path, patch) => request('PATCH', path, patch, { contentType: 'application/merge-patch+json' });

const SNAP = '/apis/snapshot.kubevirt.io/v1beta1';
const KUBEVIRT = '/apis/kubevirt.io/v1';
const SCHEDULE = '/apis/schedule.vmsnap.io/v1alpha1';
const BACKUP = '/apis/backup.vmsnap.io/v1alpha1';
const ns = (namespace) => (namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '');
const one = (name) => (name ? `/${encodeURIComponent(name)}` : '');

/// API paths; a missing namespace means all namespaces.
export const paths = {
  vms: (namespace, name) => `${KUBEVIRT}${ns(namespace)}/virtualmachines${one(name)}`,
  vmis: (namespace, name) => `${KUBEVIRT}${ns(namespace)}/virtualmachineinstances${one(name)}`,
  snapshots: (namespace, name) => `${SNAP}${ns(namespace)}/virtualmachinesnapshots${one(name)}`,
  contents: (namespace, name) => `${SNAP}${ns(namespace)}/virtualmachinesnapshotcontents${one(name)}`,
  restores: (namespace, name) => `${SNAP}${ns(namespace)}/virtualmachinerestores${one(name)}`,
  schedules: (namespace, name) => `${SCHEDULE}${ns(namespace)}/virtualmachinesnapshotschedules${one(name)}`,
  repositories: (namespace, name) => `${BACKUP}${ns(namespace)}/virtualmachinebackuprepositories${one(name)}`,
  backups: (namespace, name) => `${BACKUP}${ns(namespace)}/virtualmachinerepositorybackups${one(name)}`,
  backupRestores: (namespace, name) => `${BACKUP}${ns(namespace)}/virtualmachinerepositoryrestores${one(name)}`,
  events: (namespace) => `/api/v1${ns(namespace)}/events`,
  vmAction: (namespace, name, action) =>
    `/apis/subresources.kubevirt.io/v1${ns(namespace)}/virtualmachines/${encodeURIComponent(name)}/${action}`,
};

/// Starts, stops or restarts a VirtualMachine (`PUT .../virtualmachines/NAME/ACTION` with `{}`).
export function vmAction(namespace, name, action) {
  return request('PUT', paths.vmAction(namespace, name, action), {});
}

/// A VirtualMachineSnapshot of a VM.
export function snapshotObject(namespace, name, vmName) {
  return {
    apiVersion: 'snapshot.kubevirt.io/v1beta1',
    kind: 'VirtualMachineSnapshot',
    metadata: { name, namespace },
    spec: { source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vmName } },
  };
}

/// A VirtualMachineRestore of `snapshotName` into the VM `targetName` (existing or new).
export function restoreObject(namespace, name, snapshotName, targetName, targetReadinessPolicy) {
  const spec = {
    target: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: targetName },
    virtualMachineSnapshotName: snapshotName,
  };
  if (targetReadinessPolicy) spec.targetReadinessPolicy = targetReadinessPolicy;
  return { apiVersion: 'snapshot.kubevirt.io/v1beta1', kind: 'VirtualMachineRestore', metadata: { name, namespace }, spec };
}

/// The API version of vmsnap's backup kinds.
export const BACKUP_API_VERSION = 'backup.vmsnap.io/v1alpha1';

/// A VirtualMachineRepositoryBackup of the VM `vmName` into the repository `repository`; `forceFull`
/// reads every allocated byte even when an incremental backup is possible.
export function repositoryBackupObject(namespace, name, vmName, repository, { forceFull = false } = {}) {
  const spec = { repository, source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vmName } };
  if (forceFull) spec.forceFull = true;
  return { apiVersion: BACKUP_API_VERSION, kind: 'VirtualMachineRepositoryBackup', metadata: { name, namespace }, spec };
}

/// A VirtualMachineRepositoryRestore of the backup `backupName` into the VM `targetName`.
export function repositoryRestoreObject(namespace, name, backupName, targetName) {
  return {
    apiVersion: BACKUP_API_VERSION,
    kind: 'VirtualMachineRepositoryRestore',
    metadata: { name, namespace },
    spec: { backupName, target: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: targetName } },
  };
}
