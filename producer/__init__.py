"""Camera producers: submit files, replay a folder as a simulated camera."""
