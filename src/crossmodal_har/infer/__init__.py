"""crossmodal_har.infer"""
