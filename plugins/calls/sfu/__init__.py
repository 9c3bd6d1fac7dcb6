"""The calls plugin's SFU: group calls (and recorded calls) routed through the server, which
forwards each participant's encoded media to the others and to the recorder without
decoding it."""
