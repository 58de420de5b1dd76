"""crossmodal_har.models"""
