import sys

from uhr_seg_ros.cli import main

sys.exit(main())
