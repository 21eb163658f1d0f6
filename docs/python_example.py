import compare
samples = compare.load_set(None, "patches")[:8]          # SigTuple patches: image, mask, name
model = compare.WBCModel("threshold").fit(samples)       # or compare.load_model() for the trained U-Net
prediction = model.predict(samples[0].image)              # any (H, W, 3) uint8 RGB image
print(prediction.count, prediction.scale.factor, prediction.cells.columns.tolist()[:5])
