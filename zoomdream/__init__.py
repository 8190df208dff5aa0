"""zoomdream: DeepDream stills, infinite zooms and stylized video."""
