"""Stain and colour handling for blood-smear images (numpy / scikit-image only).

``stain.normalise`` maps an image's plasma background to the training data's;
``stain.looks`` imitates other laboratories' stains; ``stain.augment`` draws
random stain and imaging changes for training.  This package never imports
``compare``, ``baselines`` or ``unet``.
"""
