"""`dlkit evaluate`: a trained model measured on labelled data the user brings."""
