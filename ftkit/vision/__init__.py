"""Model design for images (notebook 07): plain and residual CIFAR networks, the article's network, gradient norms
at initialization (``resnets``),
and transfer from an ImageNet ResNet-18 — probe, fine-tune, scratch (``transfer``)."""
