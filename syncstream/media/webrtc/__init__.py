"""WebRTC output (WHEP): H.264 passed through, AAC transcoded to Opus once per stream."""
