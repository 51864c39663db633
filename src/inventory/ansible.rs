//! Ansible inventory conversion (INI and YAML) into a gpuctl inventory.
