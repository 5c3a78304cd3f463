"""saywell.client"""
