"""The deployment tests run on one CPU thread, seeded."""
import torch

torch.set_num_threads(1)
