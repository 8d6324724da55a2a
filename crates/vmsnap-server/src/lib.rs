//! Assembles the embedded control plane: store, API server, agent, storage driver, controllers and console.
