"""What this computer is (OS, memory, GPUs, Pythons, disk) and which torch build fits it."""

from geolibre_env.machine.detect import Gpu, Machine, detect_machine, nvidia_gpus

__all__ = ["Gpu", "Machine", "detect_machine", "nvidia_gpus"]
