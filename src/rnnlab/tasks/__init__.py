"""LightningModules, one per shape of prediction; tasks of the same shape share one
(sentiment and speech: ClassificationTask; g2p and translate: Seq2SeqTask)."""
