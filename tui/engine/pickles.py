"""Which weight files are Python pickles: loading one can run any code in it, so sdtui loads
them only with --allow-pickle (safetensors files hold tensors and nothing else)."""

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
