"""The placement study (``crossmodal-har demo --study placement``): does pairing IMU with video teach an IMU
encoder what transfers to a waist-worn phone? Its plan of stages (:mod:`.plan`), what the IMU tower learned
(:mod:`.probe`) and its report (:mod:`.report`)."""
