"""Using trained checkpoints: load them, predict with test-time augmentation and fold ensembles, write
Kaggle submissions, aggregate out-of-fold predictions, export to ONNX / TorchScript."""
