"""Channel/weight importance criteria: Torch-Pruning's built-ins plus HARP, HYDRA and LWM."""
