"""Videos -> manifests of clip/title text pairs, the silent-video pool and a frame cache."""
