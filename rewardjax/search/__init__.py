"""Test-time search with reward models: step-wise generation, scorers, selection, search.

    (rewardjax.sampling.stepwise: StepGenerator, step-wise decoding with KV caches, re-exported)
    scorers.py    PRM / ORM / implicit PRM / step-tag LM / verifier scorers, aggregation
    selection.py  best-of-N, majority and weighted votes returning the chosen answer
    search.py     sampling N, early rejection, PRM beam search, DVTS, lookahead
    mcts.py       MCTS over reasoning steps (RAP, ReST-MCTS*) and its value targets
    genarm.py     GenARM: autoregressive-RM loss and token-level guided decoding
"""

from rewardjax.search.mcts import (MCTSConfig, Node, StepEnv, mcts, mcts_search,
                                   rest_mcts_value_targets, value_target_records)
from rewardjax.search.scorers import (AGGREGATIONS, ImplicitPRMScorer, OutcomeScorer, PRMScorer,
                                      Retokenize, Scores, StepTagLMScorer, TokenClassPRMScorer,
                                      TokenizerMismatchError, VerifierScorer, aggregate,
                                      check_tokenizer, score_inputs)
from rewardjax.search.search import (Candidate, SearchConfigError, SearchResult, beam_search,
                                     dvts, early_rejection, sample_n)
from rewardjax.search.selection import (Choice, best_of_n, expected_credit, majority_vote,
                                        selection_accuracies, weighted_vote)
from rewardjax.sampling.stepwise import (Candidates, Counter, StepConfig, StepDelimiterError,
                                       StepGenerator, StepState, candidates, delimiter_ids,
                                       running)

from rewardjax.search.genarm import (GuidedSamples, GuidedState, arm_loss, arm_pair_loss,
                                     arm_rewards, genarm_sample, guidance_weight,
                                     guided_decode, guided_logits)

__all__ = [
    "AGGREGATIONS", "Candidate", "Candidates", "Choice", "Counter", "ImplicitPRMScorer",
    "MCTSConfig", "Node", "OutcomeScorer", "PRMScorer", "Retokenize", "Scores",
    "SearchConfigError", "SearchResult", "StepConfig", "StepDelimiterError", "StepEnv",
    "StepGenerator", "StepState", "StepTagLMScorer", "TokenClassPRMScorer",
    "TokenizerMismatchError", "VerifierScorer", "aggregate", "beam_search", "best_of_n",
    "candidates", "check_tokenizer", "delimiter_ids", "dvts", "early_rejection",
    "expected_credit", "majority_vote", "mcts", "mcts_search", "rest_mcts_value_targets",
    "running", "sample_n", "score_inputs", "selection_accuracies", "value_target_records",
    "weighted_vote",
    "GuidedSamples", "GuidedState", "arm_loss", "arm_pair_loss", "arm_rewards", "genarm_sample",
    "guidance_weight", "guided_decode", "guided_logits",
]
