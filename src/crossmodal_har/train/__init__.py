"""crossmodal_har.train"""
