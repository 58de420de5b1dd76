"""crossmodal_har.signals: the IMU signal layer and labelled datasets.

Modules (nothing is imported here, so importing the package does no work):
  types      PreprocessConfig, ImuRecording, Segment, DatasetReport, WindowSet
  clock      zone, TimeZoneError, format_offset, parse_start, TimeBase, resolve_timebase (the one clock)
  status     STATUS_OK, STATUS_GAP, ..., QUALITY_REASONS, NO_WINDOW_STATUSES  (every window status)
  units      Units, to_canonical, declared_unit_factor           (g, rad/s, seconds; the one unit table)
  recording  read_recording, iter_chunks (strict | lenient), units_for   (the one front end: tables and
             device files, one time check, one units rule; DataError with file and line)
  tables     CSV / Parquet blocks, header rule, diagnose_csv
  devices    open_device, READERS: Axivity .cwa, GENEActiv and GENEA .bin, APDM .h5, ActiGraph .gt3x, Empatica
  resample   split_at_gaps, resample_segment, resample, lowpass_eval, ANTIALIAS_MARGIN_S, antialias_margin_s
  windows    median_filter, window_segments, check_quality, recording_windows, select_channels,
             model_samples (the one channel selection: acc | acc+gyro)
  normalize  normalize_windows (zscore | none, at model input), RecordingStats (recording: before windowing)
  generic    the generic labelled format; write_generic_dataset
  datasets   load_labelled(spec, cfg)                            (dir | hapt | hapt:<path> | uestc[5]:<dir>)
  hapt, uestc, legacy_pickle                                     dataset converters
See docs/data-formats.md.
"""
