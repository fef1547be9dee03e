"""The core every feature passes through: errors, images, preprocessing, the decode pipeline, files."""
