"""Quality metrics of a synthetic cohort: feature realism (FD, KID, PRDC) in a domain feature space,
intra-class diversity (MS-SSIM) and task utility (TRTR/TSTR/TR+S arms), per class."""
