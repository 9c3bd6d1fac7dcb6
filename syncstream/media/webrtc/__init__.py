"""WebRTC output (WHEP): H.264 passed through (re-encoded once per stream when the source has
B-frames), AAC transcoded to Opus once per stream."""
