"""The request pipeline: authenticate -> attribute -> price -> decide -> reserve -> forward -> settle -> record.

It talks to the world only through the ports in `p402.pipeline.ports`.
"""
