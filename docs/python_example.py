import compare
model = compare.load_model()                                # the U-Net shipped with the package; or load_model(FOLDER)
image = compare.load_set(None, "patches")[0].image          # or compare.read_image("slide.jpg"): (H, W, 3) uint8 RGB
prediction = model.predict(image)                           # .labels, .cells, .scale, .warnings
print(prediction.labels.max(), prediction.scale.factor, prediction.cells.columns.tolist()[:5])
