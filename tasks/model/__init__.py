"""What a model is: architectures, the run config, the ensemble combiners, the model folder
(card + member weights) and the run folder that holds everything a training run writes."""
