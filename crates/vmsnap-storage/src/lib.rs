//! Local storage driver: PVCs, DataVolumes and VolumeSnapshots as qcow2 layer chains, plus a copying baseline driver.
