//! Every command line in `deploy/` is one the binary accepts: the containers' `command` and `args`
//! go through the same parser as `vmsnap` itself, without serving anything.

use std::path::Path;

use clap::Parser;
use serde_json::Value;

use super::Cli;

/// `(file, container, command line)` of every container in the YAML documents of `deploy/`.
fn command_lines() -> Vec<(String, String, Vec<String>)> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&deploy).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(file).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document).unwrap();
            let containers = object.pointer("/spec/template/spec/containers").and_then(Value::as_array);
            for container in containers.into_iter().flatten() {
                let strings = |key: &str| -> Vec<String> {
                    container[key]
                        .as_array()
                        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default()
                };
                // An image without an entrypoint of its own runs `command` (else `vmsnap`) with `args`.
                let mut line = strings("command");
                if line.is_empty() {
                    line.push("vmsnap".into());
                }
                line.extend(strings("args"));
                let name = container["name"].as_str().unwrap_or_default().to_owned();
                found.push((file.file_name().unwrap().to_string_lossy().into_owned(), name, line));
            }
        }
    }
    found
}

#[test]
fn every_command_line_in_deploy_is_accepted_by_the_binary() {
    let lines = command_lines();
    let containers: Vec<&str> = lines.iter().map(|(_, name, _)| name.as_str()).collect();
    assert_eq!(containers, ["controller", "webhook"], "the containers of deploy/ changed: {lines:?}");
    for (file, container, line) in &lines {
        assert_eq!(line[0], "vmsnap", "{file} ({container}) does not run vmsnap: {line:?}");
        if let Err(error) = Cli::try_parse_from(line) {
            panic!("deploy/{file} ({container}) runs `{}`, which vmsnap refuses:\n{error}", line.join(" "));
        }
    }
}

#[test]
fn a_command_line_the_binary_refuses_is_caught() {
    let error =
        Cli::try_parse_from(["vmsnap", "webhook", "--listen", "0.0.0.0:8443", "--tls-directory", "/tls"])
            .unwrap_err();
    assert!(error.to_string().contains("--tls-directory"), "{error}");
}
