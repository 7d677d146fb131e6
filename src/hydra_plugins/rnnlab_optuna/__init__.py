"""Optuna studies for Hydra multiruns, on a current Optuna (4.x and later).

Hydra finds this package by scanning the ``hydra_plugins`` namespace. It is selected
with ``hydra/sweeper=rnnlab_optuna`` (the ``conf/hparams_search/*.yaml`` files do) and
keeps the config keys of the retired ``hydra-optuna-sweeper`` plugin: direction,
study_name, storage, n_trials, n_jobs, sampler and params in Hydra's override grammar.
"""
