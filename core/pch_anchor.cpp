// Anchors the shared LibTorch precompiled header that every torch-using target reuses.
