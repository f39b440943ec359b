"""What this computer is (OS, memory, GPUs, Pythons, disk) and which torch build fits it."""

from geolibre_env.machine.detect import Machine, detect_machine

__all__ = ["Machine", "detect_machine"]
