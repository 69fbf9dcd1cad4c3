"""Training: torch, Opacus and Ray live here and only here. Datasets and models (registries), one model's DP-SGD
or plain training with white-box gradient canaries, the accountant and its cross-check, training jobs, the model
cache and the executors that run the jobs (local processes, Ray)."""
