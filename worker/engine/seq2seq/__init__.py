"""The encoder-decoder engine (T5, FiD): kernels, the session, joint and FiD modes."""
