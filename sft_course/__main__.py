import sys

from sft_course.cli import main

sys.exit(main())
