"""dlkit: the classic Keras deep-learning examples as real command-line tools."""

import os as _os

# OpenCV prints its C++ decoder warnings ("[ERROR:0@0.005] ... IHDR chunk shall be first") straight
# to stderr for every corrupt image; dlkit reports unreadable files itself, one line each.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

__version__ = "0.1.0"
