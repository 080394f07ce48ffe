"""Pixel and text metrics (SSIM, PSNR, LPIPS, BERTScore): not implemented yet.

Rubrics may declare a `metrics:` block today (it is validated); `rubric-judge score` reports
that metrics are not computed yet rather than inventing values.
"""
