"""crossmodal_har.evaluate"""
