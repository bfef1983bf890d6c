"""Training and evaluation on Stable-Baselines3; runs inside a worker's child process."""
