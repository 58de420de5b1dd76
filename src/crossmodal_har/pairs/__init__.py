"""crossmodal_har.pairs"""
