"""crossmodal_har.signals"""
