"""crossmodal-har pairs-dataset: a labelled dataset from a paired corpus's IMU and labels.csv."""

NAME = "pairs-dataset"
HELP = "a labelled dataset from a paired corpus's IMU"
DESCRIPTION = (
    "Write a labelled dataset in the generic format (crossmodal-har formats) from a paired corpus whose labels.csv "
    "labels its sessions (e.g. the simulator's output): each labelled session's IMU (imu.csv, or imu-SITE.csv with "
    "--imu-site), read with its session.json units and offset and written in g and rad/s on the video clock, with "
    "its labels and subject. The videos are not copied. Then: crossmodal-har evaluate --dataset OUT. An OUT made "
    "earlier from the same --src is replaced; any other existing OUT is refused."
)


def add_arguments(p):
    p.add_argument("--src", required=True, help="paired corpus: <src>/<session>/imu.csv + <src>/labels.csv")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--imu-site", metavar="SITE", help="read <session>/imu-SITE.csv (one IMU per body site)")
    p.add_argument("--name", default="", help="the dataset's name in reports (default: the corpus's folder name)")


def run(args) -> int:
    from crossmodal_har.io import guard_output_dir
    from crossmodal_har.pairs.labelled import write_labelled_dataset

    guard_output_dir(("--out", args.out), [("--src", args.src)])
    out = write_labelled_dataset(args.src, args.out, imu_site=args.imu_site, name=args.name)
    print(f"wrote {out} (dataset.json, labels.csv, recordings/)")
    return 0
