"""GoPro MP4s as paired IMU+video: the accelerometer and gyroscope from the "GoPro MET" track.

A GoPro MP4 carries, beside its video, a timed data track (handler "GoPro MET", sample format
``gpmd``) whose samples ("payloads", usually one per ~1 s) are GPMF (see
:mod:`crossmodal_har.pairs.gpmf`). The package reads every payload with its presentation time and
duration (PyAV), decodes the ACCL and GYRO streams, and puts each IMU sample on the video clock:
seconds from the video stream's first presentation time (the convention of
:mod:`crossmodal_har.pairs.sources`). See docs/gopro.md.

Modules:
    * :mod:`.telemetry`: the MP4's telemetry track and its GPMF payloads -> ACCL/GYRO streams
      (camera model, axis order, declared units).
    * :mod:`.timing`: per-sample times on the video clock (TSMP, STMP, payload times, TIMO).
    * :mod:`.source`: canonical IMU (g, rad/s, s) and the ``gopro`` ingest layout (one session per MP4).
    * :mod:`.extract`: one MP4 written as a paired-folder session (``crossmodal-har gopro-extract``).
"""
