"""Training, forecasting and diagnosis for the Elman RNN family (the tutorial's task, corrected).

Every gradient comes from `handgrad.loss_and_grads`; nothing here differentiates by itself.
"""
from .data import (Dataset, Scaler, Series, Windows, build_dataset, load_csv, sine_series,
                   tutorial_dataset)
from .diagnose import Saturation, saturation
from .loop import TrainConfig, TrainResult, evaluate, persistence_rmse, train
from .model import Model, load_model, save_model
from .optim import Clip, clip, global_norm, make_optimizer, parse_clip

__all__ = [
    "Dataset", "Scaler", "Series", "Windows", "build_dataset", "load_csv", "sine_series",
    "tutorial_dataset", "Saturation", "saturation", "TrainConfig", "TrainResult", "evaluate",
    "persistence_rmse", "train", "Model", "load_model", "save_model", "Clip", "clip",
    "global_norm", "make_optimizer", "parse_clip",
]
