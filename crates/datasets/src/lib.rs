//! norma-datasets (under construction)
