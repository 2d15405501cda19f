"""`python -m beast.envs`: list the Gymnasium ids Beast can make here."""

import gymnasium as gym


def main() -> None:
    for env_id in sorted(gym.registry):
        print(env_id)


if __name__ == "__main__":
    main()
