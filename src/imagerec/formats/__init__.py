"""Model file formats: each reads its files into a Recognizer (and writes them)."""
