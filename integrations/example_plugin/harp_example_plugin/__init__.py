"""An example third-party plugin for harp-plugin (see plugin.py for the registration)."""
