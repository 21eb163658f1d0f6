"""The U-Net segmenter: model, augmentation, losses, training and the fitted segmenter.

Importing this package stays light: Keras / TensorFlow load only when a
module that needs them is imported (``unet.segmenter``) or a model is built.
"""

import os as _os

# TensorFlow prints C++ info and warning lines on start-up; keep errors only,
# unless the user asked for something else.  This is the package's one
# import-time setting, and it cannot wait: TensorFlow reads the variable once,
# when it is first imported, which any unet module may trigger.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
