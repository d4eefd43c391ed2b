"""art: scientific image generation (diffusion and a StyleGAN-style GAN) trained from scratch on microscopy."""
