"""An embedded synthetic galaxy survey in the style of Galaxy Zoo 2, so the whole pipeline runs
on a fresh machine with no downloads.

Every object is drawn from a *truth* (``truth``): a class among ``catalogs.labels.CLASSES``
(spiral, elliptical, edge-on, merger, ambiguous), a sub-kind and a set of features (number of
arms, winding, bar, bulge prominence, roundness, ring, dust lane, odd feature, how visible all of
it is). From the truth come three things, each from its own random stream so that they do not
disturb each other:

* an image (``render``): a ``size``×``size`` RGB JPEG like GZ2's SDSS *gri* cutouts (black sky,
  the galaxy centred and scaled to its Petrosian radius: the frame spans ~8.5 R90, as in GZ2);
* a footprint mask (``render``): 8-bit PNG, 255 where the noiseless, PSF-convolved image of the
  target alone (no neighbours, no noise) is brighter than ~2 sky sigma;
* simulated volunteer votes (``votes``) turned into per-question fractions for the 37 GZ2
  answers, written under the Hart et al. (2016) ``..._debiased`` names of ``GZ2_TREE``; the
  catalog ``label`` comes from those fractions through ``catalogs.labels.derive_labels``,
  exactly as for real GZ2 data.

``survey`` writes them all with the catalog table (``render_survey``). Each module documents its
own model: ``truth`` the objects, ``render`` the rendering and colour models (``scene`` the
profiles and fields it draws with), ``votes`` the vote model, ``survey`` the files and
determinism: each object's random streams come from ``numpy.random.SeedSequence([seed,
index])``, so nothing depends on the worker count or the order in which workers finish.
"""

from catalogs.synthetic.render import render_object
from catalogs.synthetic.survey import render_survey, synthesize_survey
from catalogs.synthetic.truth import MIXES, sample_truth
from catalogs.synthetic.votes import simulate_votes

__all__ = ["MIXES", "render_object", "render_survey", "sample_truth", "simulate_votes", "synthesize_survey"]
