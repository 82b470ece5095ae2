"""Dataset readers (NYUD, PASCAL-MT) and paired image/label augmentation."""
